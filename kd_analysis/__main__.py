import sys

from kd_analysis.cli import main

sys.exit(main())
