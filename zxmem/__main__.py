from zxmem.cli import main

raise SystemExit(main())
