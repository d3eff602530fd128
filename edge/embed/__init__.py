"""What viewers load: the player script, the iframe embed page, its playback config, `/`."""
