#!/usr/bin/env python
"""Django's command-line utility for administrative tasks."""

import os
import sys

if __name__ == "__main__":
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "realestate.settings")
    from realestate.dev.localkey import KEY_FILE, use_local_secret_key

    if KEY_FILE.exists():  # a checkout where make run or make test made its local key
        use_local_secret_key()
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)
