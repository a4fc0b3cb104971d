"""Device profiles: the topic each kind of device publishes on and the decoder that reads it."""
