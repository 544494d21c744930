import sys

from netdef.cli import main

sys.exit(main())
