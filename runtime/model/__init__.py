"""The Llama-family model as a list of operations, its weight loader and rotary tables."""
