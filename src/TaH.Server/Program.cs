using System.CommandLine;
using TaH.Engine.Serving;
using TaH.Server.Cli;

// Before anything loads libtorch: its OpenMP workers sleep when idle instead of spinning.
ThreadPolicy.CooperateUnderContention();

var root = new RootCommand("tah: serve and run Think-at-Hard (TaH) language models");
var serve = ServeCommand.Create();
root.Subcommands.Add(serve);
root.Subcommands.Add(GenerateCommand.Create());
root.Subcommands.Add(InspectCommand.Create());
root.Subcommands.Add(AccuracyCommand.Create());
root.Subcommands.Add(TokenizeCommand.Create());
root.Subcommands.Add(BenchCommand.Create());
root.Subcommands.Add(CreateRandomCommand.Create());
root.Subcommands.Add(TrainCommand.Create());

// `serve` is the default verb: `tah --model DIR` and a bare `tah` mean `tah serve ...`.
bool verbGiven = args.Length > 0 && (root.Subcommands.Any(c => c.Name == args[0]) || args[0] is "-h" or "--help" or "-?" or "--version");
return root.Parse(verbGiven ? args : ["serve", .. args]).Invoke();
