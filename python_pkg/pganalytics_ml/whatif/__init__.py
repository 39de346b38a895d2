"""What if: statements never run, hypothetical indexes, more data, more load; index recommendations."""
