using Microsoft.OpenApi;
using Swashbuckle.AspNetCore.SwaggerGen;

namespace TaH.Server.Api;

/// <summary>Names an endpoint's JSON body type for the OpenAPI document, without making routing require a Content-Type.</summary>
public sealed record JsonBodyMetadata(Type Type);

/// <summary>Documents the bodies named by <see cref="JsonBodyMetadata"/> (the handlers read them themselves, to answer errors in OpenAI's shape).</summary>
public sealed class RequestBodyFilter : IOperationFilter
{
    public void Apply(OpenApiOperation operation, OperationFilterContext context)
    {
        if (context.ApiDescription.ActionDescriptor.EndpointMetadata.OfType<JsonBodyMetadata>().FirstOrDefault() is { } body)
        {
            operation.RequestBody = new OpenApiRequestBody
            {
                Required = true,
                Content = new Dictionary<string, OpenApiMediaType>
                {
                    ["application/json"] = new() { Schema = context.SchemaGenerator.GenerateSchema(body.Type, context.SchemaRepository) },
                },
            };
        }
    }
}
