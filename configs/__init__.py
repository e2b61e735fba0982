"""The bundled default config and sample feeds (installed as package data of `pipeline.configs`)."""
