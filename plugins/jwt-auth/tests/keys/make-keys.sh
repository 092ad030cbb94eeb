#!/bin/sh
# Makes the test keys of jwt-auth's unit tests, fixtures and end-to-end test: a private key
# (PKCS#8 PEM, `NAME.pem`) and its public key (SPKI PEM, `NAME.pub.pem`) for each kind, and the first
# RSA public key also as PKCS#1 (`rsa.pkcs1.pub.pem`). They protect nothing: test data only.
# Run from this folder; the fixtures' tokens are then made again with
# `cargo run -p jwt-auth --example fixture_tokens` (see ../../examples/fixture_tokens.rs) and
# pasted into the fixtures.
set -eu
for name in rsa rsa-2; do
    openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$name.pem"
done
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out p256.pem
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-384 -out p384.pem
openssl genpkey -algorithm ED25519 -out ed25519.pem
for name in rsa rsa-2 p256 p384 ed25519; do
    openssl pkey -in "$name.pem" -pubout -out "$name.pub.pem"
done
openssl rsa -in rsa.pem -RSAPublicKey_out -out rsa.pkcs1.pub.pem
