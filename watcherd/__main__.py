import sys

from watcherd.cli.main import main

sys.exit(main())
