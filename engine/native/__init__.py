"""Native code kept at arm's length: GGUFs opened in llama.cpp with this machine's settings, and long native work run in a child process so its crash is a failure with words."""
