using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace TaH.Server.Hosting;

/// <summary>
/// Loads the model, then runs the engine loop until the host stops. On a stop signal it first
/// drains (before Kestrel stops listening): new requests get 503, those in flight run on for
/// the grace period, then end with an error event.
/// </summary>
public sealed class EngineService(ModelHost host, IOptions<ServerOptions> options, IHostApplicationLifetime lifetime, ILogger<EngineService> logger)
    : BackgroundService, IHostedLifecycleService
{
    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        try
        {
            await host.LoadAsync();
        }
        catch (Exception e)
        {
            logger.LogCritical("Could not load the model: {Error}", e.Message);
            Environment.ExitCode = 2;
            lifetime.StopApplication();
            return;
        }

        await host.Loop.RunAsync(stoppingToken);
    }

    public async Task StoppingAsync(CancellationToken cancellationToken)
    {
        if (host.State != ModelState.Ready)
        {
            return;
        }

        host.MarkStopping();
        var snapshot = host.Loop.Snapshot;
        logger.LogInformation("Draining: {Running} running and {Waiting} waiting requests get up to {Grace} s", snapshot.Running, snapshot.Waiting, options.Value.ShutdownGraceSeconds);
        await host.Loop.DrainAsync(options.Value.ShutdownGrace);
        logger.LogInformation("Drained");
    }

    public Task StartingAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    public Task StartedAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    public Task StoppedAsync(CancellationToken cancellationToken) => Task.CompletedTask;
}
