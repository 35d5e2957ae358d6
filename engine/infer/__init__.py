"""Asking a GGUF questions through llama.cpp: chat, greedy replies decoded side by side, and the base
model's cached answers that replay (training) and evaluation both start from."""
