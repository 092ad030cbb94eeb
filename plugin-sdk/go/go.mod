module gateway/filter

go 1.24
