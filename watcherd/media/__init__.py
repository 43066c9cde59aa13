"""What a file is and whether Twelve Labs will take it: PyAV facts, the model limits, validation."""
