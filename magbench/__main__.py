from magbench.cli import main

main()
