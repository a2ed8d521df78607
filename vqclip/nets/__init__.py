"""The frozen networks (layer 3): the taming VQGAN and its lean decoder, open_clip CLIPs, the guide classifier, safe
checkpoint reading, devices and precision, and loading a job's models once."""
