"""A simulated Falco: the gRPC outputs server the tests and the demo run against."""
