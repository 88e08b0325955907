from dreamsampler.cli import main

raise SystemExit(main())
