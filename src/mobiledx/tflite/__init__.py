"""The on-device model: Keras to LiteRT conversion, int8 quantization, TFLite metadata and the runtimes apps use."""
