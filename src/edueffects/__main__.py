from edueffects.cli import main

raise SystemExit(main())
