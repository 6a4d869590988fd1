"""Settings for every process of the engine, read once from the environment."""
