// A throwaway Kestrel server on a free loopback port with a scripted handler (for client tests).
using System.Net;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

namespace LmmR1.Rewards.Tests.Support;

internal sealed class FakeServer : IAsyncDisposable
{
    private readonly WebApplication _app;
    public string Url { get; }

    private FakeServer(WebApplication app, string url) { _app = app; Url = url; }

    public static async Task<FakeServer> StartAsync(RequestDelegate handler)
    {
        var builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        builder.WebHost.ConfigureKestrel(k => k.Listen(IPAddress.Loopback, 0));
        var app = builder.Build();
        app.MapPost("/get_reward", handler);
        await app.StartAsync();
        var address = app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First();
        return new FakeServer(app, address + "/get_reward");
    }

    public async ValueTask DisposeAsync() => await _app.DisposeAsync();
}
