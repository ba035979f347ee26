from brlgraph.cli.main import main

raise SystemExit(main())
