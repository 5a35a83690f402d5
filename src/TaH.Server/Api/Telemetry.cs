using System.Diagnostics;

namespace TaH.Server.Api;

/// <summary>The server's trace source: one span per generation, under ASP.NET Core's request span.</summary>
public static class Telemetry
{
    public const string SourceName = "TaH.Server";

    public static ActivitySource Source { get; } = new(SourceName);
}
