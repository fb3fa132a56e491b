from tsae_evals.cli.main import main

raise SystemExit(main())
