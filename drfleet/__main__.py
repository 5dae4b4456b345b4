from drfleet.cli import main

main()
