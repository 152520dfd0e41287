from wardrobe.cli import main

main()
