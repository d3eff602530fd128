"""Live streams: registry, publish (WHIP) and playback (HLS, WHEP) of one tenant's media."""
