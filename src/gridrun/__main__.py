from gridrun.cli.main import main

main()
