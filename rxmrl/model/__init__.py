"""The Reactive Transformer: embedding, generator-decoder, memory encoder, memory attention, STM."""
