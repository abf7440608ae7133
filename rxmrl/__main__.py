import sys

from rxmrl.cli import main

sys.exit(main())
