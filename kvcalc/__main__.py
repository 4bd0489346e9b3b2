from kvcalc.console import main

main()
