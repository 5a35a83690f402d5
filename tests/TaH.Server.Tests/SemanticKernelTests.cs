using System.Text;
using Microsoft.SemanticKernel;
using Microsoft.SemanticKernel.ChatCompletion;
using Microsoft.SemanticKernel.Connectors.OpenAI;
using TaH.Engine.Tokenization;

namespace TaH.Server.Tests;

/// <summary>Semantic Kernel's OpenAI connector against the real server.</summary>
[Collection(ServerCollection.Name)]
public sealed class SemanticKernelTests(SharedServer shared)
{
    private readonly TestServer _server = shared.Server;

    private IChatCompletionService Chat()
    {
#pragma warning disable SKEXP0010 // a custom endpoint is SK's documented way to reach OpenAI-compatible servers
        var kernel = Kernel.CreateBuilder().AddOpenAIChatCompletion(TestModel.Name, _server.V1, apiKey: "unused").Build();
#pragma warning restore SKEXP0010
        return kernel.GetRequiredService<IChatCompletionService>();
    }

    private static ChatHistory History()
    {
        var history = new ChatHistory("You are terse.");
        history.AddUserMessage("Name a prime number.");
        return history;
    }

    private static Reference.Output Expected(int tokens) =>
        Reference.Greedy(Reference.ChatPrompt([ChatMessage.System("You are terse."), ChatMessage.User("Name a prime number.")]), tokens);

    [Fact]
    public async Task ChatThroughSemanticKernel()
    {
        var reply = await Chat().GetChatMessageContentAsync(History(), new OpenAIPromptExecutionSettings { Temperature = 0, MaxTokens = 10 });
        Assert.Equal(AuthorRole.Assistant, reply.Role);
        Assert.Equal(Expected(10).Text, reply.Content);
        Assert.Equal(TestModel.Name, reply.ModelId);
    }

    [Fact]
    public async Task StreamingThroughSemanticKernel()
    {
        var text = new StringBuilder();
        int parts = 0;
        await foreach (var part in Chat().GetStreamingChatMessageContentsAsync(History(), new OpenAIPromptExecutionSettings { Temperature = 0, MaxTokens = 10 }))
        {
            text.Append(part.Content);
            parts++;
        }

        Assert.Equal(Expected(10).Text, text.ToString());
        Assert.True(parts > 2, $"only {parts} parts: not streamed");
    }
}
