from mllmcl.cli import main
import sys
sys.exit(main())
