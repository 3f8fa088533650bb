"""Generated code for protos/ (make proto), owned by the client."""
