import typer
app = typer.Typer()
@app.command()
def serve():
    print("hi")
