"""Measurement: the speed benchmark, the GPU check and the textbook loop they compare vqclip with."""
