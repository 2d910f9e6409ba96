from acceltune.cli import main

raise SystemExit(main())
