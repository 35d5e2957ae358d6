"""ftui's headless engine: hardware, recommendation, data, training, export and chat."""

import logging

# On CPUs with AVX512-BF16, bitsandbytes tries to fetch a faster 4-bit kernel from the hub and
# warns when it cannot; its built-in kernel is used instead, so the warning only alarms users.
logging.getLogger("bitsandbytes.backends.cpu.ops").setLevel(logging.ERROR)
