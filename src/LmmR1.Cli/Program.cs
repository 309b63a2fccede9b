// Entry point of the `lmmr1` command: builds the command tree and runs it.
using LmmR1.Cli;

return CliApp.Run(args);
