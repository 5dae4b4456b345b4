from drfleet.commandline.cli import main

main()
