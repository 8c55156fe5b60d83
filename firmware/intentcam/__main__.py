from intentcam.cli import main

raise SystemExit(main())
