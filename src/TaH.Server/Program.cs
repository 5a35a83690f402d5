using System.CommandLine;
using TaH.Server.Cli;

var root = new RootCommand("tah: serve and run Think-at-Hard (TaH) language models");
root.Subcommands.Add(GenerateCommand.Create());
root.Subcommands.Add(InspectCommand.Create());
root.Subcommands.Add(TokenizeCommand.Create());
root.Subcommands.Add(BenchCommand.Create());
root.Subcommands.Add(CreateRandomCommand.Create());
root.Subcommands.Add(TrainCommand.Create());
return root.Parse(args).Invoke();
