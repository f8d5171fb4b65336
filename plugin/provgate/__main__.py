from provgate.cli import main

main()
