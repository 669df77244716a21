"""The credential lifecycle a token portal runs around the token: orders, keys, proofing, activation, phone OTP, replacement."""
