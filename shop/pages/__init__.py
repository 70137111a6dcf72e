"""Static information pages every licensed pharmacy publishes."""
