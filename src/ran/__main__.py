from ran.cli import console

console()
