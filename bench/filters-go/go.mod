module bench-filters-go

go 1.24

require gateway/filter v0.0.0

replace gateway/filter => ../../plugin-sdk/go
