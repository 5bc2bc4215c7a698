import sys

from ran.cli import main

sys.exit(main())
