"""What only the demo, the benchmarks and the test suite use: local servers and sample data."""
