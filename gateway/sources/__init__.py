"""Where RawMessages come from. `mqtt` is the gateway's source; the registry maps a name to its config."""
