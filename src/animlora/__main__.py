from animlora.cli import main

main()
