"""The gRPC shell: servicers, conversions, interceptors, wiring."""
